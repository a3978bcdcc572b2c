"""A message in Chinese and English at once, for the layers below the message catalogue.

The catalogue (:mod:`registry.messages`) builds these; ``gis/``, which may import only ``common/``,
builds its few directly.
"""

from __future__ import annotations


class Bilingual(str):
    """A message in both languages: reads as ``中文 / English``; ``zh`` and ``en`` are its halves.

    Errors and import problems carry one: the API and the JSON report send the whole text (Chinese
    first, as the other bilingual messages), the CLI shows the half of its ``--lang``.
    """

    zh: str
    en: str

    def __new__(cls, zh: str, en: str) -> Bilingual:
        """The message with Chinese ``zh`` and English ``en``."""
        made = super().__new__(cls, f"{zh} / {en}")
        made.zh, made.en = zh, en
        return made

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        # copy and pickle rebuild a str subclass from these; str's own would be the joined text.
        return self.zh, self.en
