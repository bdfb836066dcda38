"""Text from a source (docstrings, file names, source lines) made inert where it is echoed.

One function per destination, and every echo goes through it:

- `docstring_literal`: a triple-quoted Python literal whose value is exactly the text (any
  text: quotes, backslashes, control characters, line separators, lone surrogates);
- `comment_text`: text for a `# ...` comment of the emitted module, on one line for
  Python's tokenizer and for `str.splitlines`;
- `terminal_text`: text for a terminal (diagnostics, `gradgen show`): no control sequences.

What counts as safe is `str.isprintable` (letters, digits, punctuation, symbols and the
ASCII space, in any script); everything else is written as a Python escape (`\\x1b`,
`\\u2028`, `\\ud800`), which ends no line, starts no terminal sequence and encodes in UTF-8.
This module imports nothing from gradgen, so that every layer can use it.
"""

from __future__ import annotations

__all__ = ["comment_text", "docstring_literal", "escape_char", "terminal_text"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_char(ch: str) -> str:
    """The Python escape sequence of one character (`\\t`, `\\x00`, `\\u2028`, `\\U0001f600`)."""
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escaped(text: str, keep: str = "") -> str:
    """`text` with every character that is not printable (and not in `keep`) escaped."""
    if text.isprintable() and not any(ch in _SHORT for ch in keep):
        return text
    return "".join(ch if ch.isprintable() or ch in keep else escape_char(ch) for ch in text)


def comment_text(text: str) -> str:
    """`text` made safe for the rest of a `#` comment line of the emitted module.

    Every character that is not printable is escaped, so the comment cannot end early for
    Python (CR, LF) or for `str.splitlines` (VT, FF, FS, GS, RS, NEL, U+2028, U+2029), and
    carries no NUL, terminal sequence, bidirectional override or lone surrogate. Backslashes
    stay as written (a comment is read, not evaluated).
    """
    return _escaped(text)


def terminal_text(text: str, keep: str = "") -> str:
    """`text` with control characters (and other unprintable ones) escaped for a terminal.

    `keep` names characters to leave as they are, such as a tab that aligns a caret or the
    newlines between the lines of a message.
    """
    return _escaped(text, keep)


def docstring_literal(text: str, indent: str | None = None) -> str:
    """A triple-quoted Python string literal whose value is `text`, as readable as possible.

    With `indent` (a function's docstring), every non-empty line after the first is
    indented by it and the closing quotes go on a line of their own: the value is then
    `text` with `indent` after each newline (before non-empty lines) and `"\\n" + indent`
    at the end. Without `indent` (the module docstring), the literal closes on the last line.

    Ordinary text is emitted as written. Text with backslashes but nothing else to escape
    (LaTeX, Windows paths) becomes a raw literal, still as written. Anything else gets a
    normal literal with backslashes doubled, every third quote of a run of quotes escaped,
    and every unprintable character except the newline written as an escape.
    """
    tail = "" if indent is None else "\n" + indent
    printable = all(line.isprintable() for line in text.split("\n"))
    ends_at_quotes = indent is None and text.endswith(('"', "\\"))
    if printable and '"""' not in text and not ends_at_quotes:
        prefix, body = ("r" if "\\" in text else ""), text
    else:
        prefix, body = "", _normal_literal_body(text, closes=indent is None)
    if indent is not None:
        body = _indent_after_first(body, indent)
    return f'{prefix}"""{body}{tail}"""'


def _indent_after_first(body: str, indent: str) -> str:
    first, *rest = body.split("\n")
    return "\n".join([first, *(indent + line if line else line for line in rest)])


def _normal_literal_body(text: str, closes: bool) -> str:
    """The inside of a non-raw `\"\"\"...\"\"\"` literal with value `text`; `closes`: the
    closing quotes follow the last character directly."""
    out: list[str] = []
    quotes = 0   # unescaped quotes just written: a third would close the literal
    for ch in text:
        if ch == '"':
            if quotes == 2:
                out.append('\\"')
                quotes = 0
            else:
                out.append(ch)
                quotes += 1
            continue
        quotes = 0
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n" or ch.isprintable():
            out.append(ch)
        else:
            out.append(escape_char(ch))
    if closes and quotes:
        out[-1] = '\\"'
    return "".join(out)
