"""Python 2 ``print`` statements in configs of RETURNN's 2017 era, rewritten as calls.

RETURNN then ran under Python 2, and its demo configs start with ``print "Hello, experiment: %s" % demo_name``.
Only a config that Python 3 refuses for that reason is rewritten, statement by statement, with the tokenizer (strings
and comments stay as they are): ``print x, y`` -> ``print(x, y)``, ``print x,`` -> ``print(x, end=" ")``,
``print >>f, x`` -> ``print(x, file=f)``, a bare ``print`` -> ``print()``.
"""

from __future__ import annotations

import io
import tokenize

_STARTS = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
#: what may follow ``print`` when it is a name, not a statement (a call, an assignment, an attribute...)
_NOT_STATEMENT = {"(", "=", ".", "[", ",", ")", "]", "}", ":", "+=", "-=", "*=", "/="}


def is_python2_print_error(exc: SyntaxError) -> bool:
    """Whether Python 3 refused the code for a ``print`` statement."""
    return "print" in str(exc.msg)


def rewrite_print_statements(text: str) -> str:
    """``text`` with every Python 2 ``print`` statement made a ``print(...)`` call; lines keep their numbers."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []  # (start row, col, end row, col, replacement)
    prev_type = tokenize.NEWLINE
    for i, tok in enumerate(tokens):
        # a statement starts a line, or follows ';' or the ':' of a one-line compound statement
        starts_statement = prev_type in _STARTS or (prev_type == tokenize.OP and tokens[i - 1].string in (";", ":"))
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            prev_type = tok.type
        if not (starts_statement and tok.type == tokenize.NAME and tok.string == "print"):
            continue
        nxt = tokens[i + 1]
        if nxt.type == tokenize.OP and nxt.string in _NOT_STATEMENT:
            continue
        end = i + 1
        depth = 0
        while not (depth == 0 and (tokens[end].type in (tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)
                                   or (tokens[end].type == tokenize.OP and tokens[end].string == ";"))):
            if tokens[end].type == tokenize.OP and tokens[end].string in "([{":
                depth += 1
            elif tokens[end].type == tokenize.OP and tokens[end].string in ")]}":
                depth -= 1
            end += 1
        raw = _source(lines, tok.end, tokens[end].start)
        args = raw.strip()
        edits.append((*tok.start, *tokens[end].start, f"print({_call_args(args)})" + raw[len(raw.rstrip()):]))
    for r0, c0, r1, c1, new in reversed(edits):
        # the statement's own newlines stay inside the call, so every line keeps its number
        lines[r0 - 1 : r1] = [lines[r0 - 1][:c0] + new + lines[r1 - 1][c1:]]
    return "".join(lines)


def _source(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0 : r1 - 1]) + lines[r1 - 1][:c1]


def _call_args(args: str) -> str:
    """The arguments of the call for a statement's text after ``print``."""
    target = None
    if args.startswith(">>"):
        target, _, args = args[2:].partition(",")
        target, args = target.strip(), args.strip()
    end = None
    if args.endswith(","):
        args, end = args[:-1].rstrip(), '" "'
    return ", ".join(p for p in (args, f"end={end}" if end else "", f"file={target}" if target else "") if p)
