"""The synthetic 坪山 pilot (合成演示数据): generated inventory files, loaded through the real importers.

* :mod:`importers.demo.world`: the pilot as data (zones, roads, units, assets, rules) from a seed;
* :mod:`importers.demo.generate`: writes it as the files a deployment receives, plus a manifest;
* :mod:`importers.demo.load`: loads those files once through the zones, rules and asset importers.
"""
