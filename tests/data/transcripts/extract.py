#!/usr/bin/env python3
"""Extract the exact socket bytes of the C oqmgr's IPC exchanges from the raw strace captures.

Usage: extract.py [TRANSCRIPT_DIR]   (default /work/shared/lab/transcripts)

For every read()/write() the queue manager made on a UNIX stream socket that it had
connect()ed to private/<svc> or public/<svc>, this writes one file
    <capture>/<NNN>-<write|read>-<svc>.bin
holding the bytes exactly (strace C escapes undone; the syscall's return value is checked
against the decoded length). NNN counts exchanges within the capture. INDEX.txt lists them.
The tests read only these .bin files, never the transcript directory.
"""
import os
import re
import sys

CAPTURES = {
    "main": "oqmgr-3.7.11.txt.strace",
    "lifecycle": "oqmgr-3.7.11-lifecycle.txt.strace",
    "errors": "oqmgr-3.7.11-errors.txt.strace",
    "startup": "oqmgr-3.7.11-startup.txt.strace",
}

CONNECT = re.compile(r'connect\(\d+<UNIX-STREAM:\[(\d+)\]>, \{sa_family=AF_UNIX, sun_path="((?:private|public)/[^"]+)"\}')
IO = re.compile(r'^\d+\s+([\d.]+) (read|write)\(\d+<UNIX-STREAM:\[(\d+)(?:->\d+)?\]>, "((?:[^"\\]|\\.)*)", \d+\) = (-?\d+)')
SIMPLE = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7, "b": 8, '"': 34, "\\": 92}


def unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("latin-1")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in "01234567":
            j = i + 1
            while j < len(text) and j < i + 4 and text[j] in "01234567":
                j += 1
            out.append(int(text[i + 1:j], 8))
            i = j
        elif nxt == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(SIMPLE[nxt])
            i += 2
    return bytes(out)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/lab/transcripts"
    here = os.path.dirname(os.path.abspath(__file__))
    index = []
    for capture, name in CAPTURES.items():
        outdir = os.path.join(here, capture)
        os.makedirs(outdir, exist_ok=True)
        inode_path = {}
        n = 0
        with open(os.path.join(src, name), encoding="latin-1") as f:
            for line in f:
                m = CONNECT.search(line)
                if m:
                    inode_path[m.group(1)] = m.group(2)
                    continue
                m = IO.match(line)
                if not m or m.group(3) not in inode_path:
                    continue
                when, op, inode, body, ret = m.groups()
                data = unescape(body)
                if int(ret) <= 0:
                    continue
                if len(data) != int(ret):
                    sys.exit(f"{capture}: {when}: decoded {len(data)} bytes, syscall returned {ret}")
                n += 1
                svc = inode_path[inode].split("/", 1)[1]
                fname = f"{n:03d}-{op}-{svc}.bin"
                with open(os.path.join(outdir, fname), "wb") as out:
                    out.write(data)
                index.append(f"{capture}/{fname}\t{name} t={when}\t{inode_path[inode]}\t{len(data)} bytes")
    with open(os.path.join(here, "INDEX.txt"), "w") as f:
        f.write("# file\tsource capture and strace timestamp\tpeer\tlength\n")
        f.write("\n".join(index) + "\n")


if __name__ == "__main__":
    main()
