"""Domain core of the smart-code registry: units, component classes, assets, codes and their history."""
