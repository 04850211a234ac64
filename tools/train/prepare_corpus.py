#!/usr/bin/env python3
"""Builds the training corpus from public-domain texts shipped in Debian packages.

Sources (by package name; the script says which `apt-get install` a missing one needs):
- `austen`: Jane Austen's six novels from `r-cran-janeaustenr` (the R package's data file, read
  here without R: zlib blocks holding R-serialized character vectors, one element per line).
- `kjv`: the King James Bible from `bible-kjv` + `bible-kjv-text` (`bible -f gen1:1-rev22:21`).

The split is fixed: of each document (a novel, or one Testament), the last 5% of its lines,
starting at a paragraph break, is validation; the rest is training. Writes `train.txt`,
`valid.txt` (the documents' validation parts joined by blank lines: one text for `dijiang
score`) and `corpus.json` (documents in order with their byte counts, sources, licences and the
sha256 of both files). The trainer separates training documents with end-of-text.

    python3 tools/train/prepare_corpus.py --out data/corpus [--sources austen,kjv]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

VALID_FRACTION = 0.05
AUSTEN_DATA = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
AUSTEN_TITLES = {
    "SENSE AND SENSIBILITY": "Sense and Sensibility",
    "PRIDE AND PREJUDICE": "Pride and Prejudice",
    "MANSFIELD PARK": "Mansfield Park",
    "EMMA": "Emma",
    "NORTHANGER ABBEY": "Northanger Abbey",
    "PERSUASION": "Persuasion",
}
LICENCES = {
    "austen": "The novels are in the public domain (Project Gutenberg texts); the janeaustenr "
    "package that carries them is MIT-licensed (Julia Silge).",
    "kjv": "The King James Version's copyright has expired (public domain outside the UK, where "
    "Crown letters patent apply); the bible-kjv-text package is GPL-2+ (its packaging and index).",
}


def missing_package(package: str) -> SystemExit:
    return SystemExit(f"missing Debian package {package}: run 'apt-get install -y {package}' (as root) and retry")


def r_character_vectors(raw: bytes):
    """Yields each block's character vector. A block: 4-byte big-endian length, then zlib data
    holding R's XDR serialization ('X\\n', versions, native encoding, then a STRSXP)."""
    offset = 0
    while offset < len(raw):
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw[offset + 4 :])
        offset = len(raw) - len(inflater.unused_data)
        if data[:2] != b"X\n":
            raise ValueError("janeaustenr data: not an XDR-serialized R object")
        position = 2 + 12
        (encoding_length,) = struct.unpack(">i", data[position : position + 4])
        position += 4 + encoding_length
        flags, count = struct.unpack(">ii", data[position : position + 8])
        position += 8
        if flags & 0xFF != 16:  # STRSXP
            raise ValueError(f"janeaustenr data: expected a character vector, found SEXP type {flags & 0xFF}")
        lines = []
        for _ in range(count):
            _flags, length = struct.unpack(">ii", data[position : position + 8])
            position += 8
            if length < 0:  # NA_character_
                lines.append("")
                continue
            lines.append(data[position : position + length].decode("utf-8"))
            position += length
        yield lines


def austen_documents():
    if not AUSTEN_DATA.is_file():
        raise missing_package("r-cran-janeaustenr")
    documents = []
    for lines in r_character_vectors(AUSTEN_DATA.read_bytes()):
        first = next(line.strip() for line in lines if line.strip())
        title = AUSTEN_TITLES.get(first.upper())
        if title is None:
            raise ValueError(f"janeaustenr data: unexpected novel starting {first!r}")
        documents.append(("austen", title, lines))
    # The package's order is not its index's; sort by title so the split never depends on it.
    return sorted(documents, key=lambda document: document[1])


def kjv_documents():
    if shutil.which("bible") is None:
        raise missing_package("bible-kjv")
    text = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    old, new = [], []
    for line in text.splitlines():
        match = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line)
        if match is None:
            continue
        book = match.group(1)
        target = new if book in NEW_TESTAMENT_ABBREVIATIONS or new else old
        target.append(f"{match.group(2)}:{match.group(3)} {match.group(4)}")
    return [("kjv", "Old Testament", old), ("kjv", "New Testament", new)]


# The tool's abbreviation of Matthew, the first book of the New Testament.
NEW_TESTAMENT_ABBREVIATIONS = {"Mat"}
SOURCES = {"austen": austen_documents, "kjv": kjv_documents}


def split_document(lines: list[str]) -> tuple[str, str]:
    """Last VALID_FRACTION of lines, moved back to a paragraph start, is validation."""
    cut = int(len(lines) * (1 - VALID_FRACTION))
    while cut > 0 and lines[cut - 1].strip():
        cut -= 1
    return "\n".join(lines[:cut]).strip("\n") + "\n", "\n".join(lines[cut:]).strip("\n") + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--sources", default="austen", help="comma-separated: austen, kjv (default: austen)")
    args = parser.parse_args()
    names = [name.strip() for name in args.sources.split(",") if name.strip()]
    unknown = [name for name in names if name not in SOURCES]
    if unknown or not names:
        parser.error(f"--sources: unknown source(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SOURCES)}")
    documents = [document for name in names for document in SOURCES[name]()]
    train_parts, valid_parts, entries = [], [], []
    for source, title, lines in documents:
        train, valid = split_document(lines)
        train_parts.append(train)
        valid_parts.append(valid)
        entries.append(
            {"source": source, "title": title, "train_bytes": len(train.encode()), "valid_bytes": len(valid.encode())}
        )
    args.out.mkdir(parents=True, exist_ok=True)
    train_path, valid_path = args.out / "train.txt", args.out / "valid.txt"
    train_path.write_text("".join(train_parts), encoding="utf-8")
    valid_path.write_text("\n\n".join(valid_parts), encoding="utf-8")
    corpus = {
        "sources": {name: LICENCES[name] for name in names},
        "valid_fraction": VALID_FRACTION,
        "documents": entries,
        "files": {
            "train.txt": {"bytes": train_path.stat().st_size, "sha256": sha256(train_path)},
            "valid.txt": {"bytes": valid_path.stat().st_size, "sha256": sha256(valid_path)},
        },
    }
    (args.out / "corpus.json").write_text(json.dumps(corpus, indent=2) + "\n")
    for name, entry in corpus["files"].items():
        print(f"{args.out / name}: {entry['bytes']} bytes, sha256 {entry['sha256']}", file=sys.stderr)


if __name__ == "__main__":
    main()
