"""The one exception type for bad input."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: names the file, the field and the offending value.

    ``str(err)`` is one line, e.g.
    ``hw.json: H100.TFlopsPeak = -1.0: must be a finite number > 0``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: object = None,
        field: str | None = None,
        value: object = ...,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.field = field
        self.value = value
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.field is not None:
            parts.append(self.field if self.value is ... else f"{self.field} = {self.value!r}")
        elif self.value is not ...:
            parts.append(repr(self.value))
        text = ": ".join(parts + [self.message])
        if self.hint:
            text += f" ({self.hint})"
        return text.replace("\n", " ")
