"""A program run in a pseudo-terminal, and the screen a terminal would show for its output.

Enough of a terminal to see what a person sees after a live view: it moves
the cursor up and down, returns, erases lines and writes characters over
what is there (rich's live display uses nothing else; colours are dropped).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios
from collections.abc import Sequence
from pathlib import Path

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07]*\x07")


def run_in_pty(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    columns: int,
    rows: int,
    timeout_s: float,
) -> tuple[int, str]:
    """Run `argv` with a terminal of `columns` x `rows` as its stdin, stdout and
    stderr; its exit code and everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the program
        os.chdir(cwd)
        os.execve(argv[0], list(argv), env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    output = bytearray()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                os.kill(pid, 9)
                break
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            output += data
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def screen(output: str, columns: int) -> list[str]:
    """The lines a terminal `columns` wide shows after `output` (its whole scrollback)."""
    lines: list[str] = [""]
    row = col = 0
    i = 0
    while i < len(output):
        if output[i] == "\x1b":
            csi = _CSI.match(output, i)
            if csi is not None:
                row, col = _control(lines, row, col, csi.group(1), csi.group(2))
                i = csi.end()
                continue
            osc = _OSC.match(output, i)
            i = osc.end() if osc is not None else i + 1
            continue
        ch = output[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
        elif ch >= " ":
            if col >= columns:  # the terminal wraps a long line
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append("")
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        while len(lines) <= row:
            lines.append("")
        i += 1
    return [line.rstrip() for line in lines]


def _control(lines: list[str], row: int, col: int, arg: str, command: str) -> tuple[int, int]:
    n = int(arg) if arg.isdigit() else 1
    if command == "A":
        return max(0, row - n), col
    if command == "B":
        return row + n, col
    if command == "G":
        return row, max(0, n - 1)
    if command == "K":
        while len(lines) <= row:
            lines.append("")
        lines[row] = lines[row][:col] if arg in ("", "0") else ""
    return row, col  # colours, cursor show/hide: nothing to draw
