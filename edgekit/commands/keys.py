"""edgekit keys new PRIVATE PUBLIC [--force] | show FILE.

The fleet's package key pair: ``new`` writes the private key 0600 and refuses to overwrite either
file without ``--force``; ``show`` tells a private key from a public one and prints the public
key, never the private."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="create a key pair (private 0600; refuses to overwrite without --force)")
    new.add_argument("private", help="the private key file to write")
    new.add_argument("public", help="the public key file to write (devices pin its content)")
    new.add_argument("--force", action="store_true", help="replace existing key files")
    show = sub.add_parser("show", help="say whether FILE holds a private or a public key, and print the public key")
    show.add_argument("file")


def run(args: argparse.Namespace) -> int:
    from edgekit import keys

    if args.action == "new":
        public = keys.create(args.private, args.public, force=args.force)
        print(f"public key: {public}")
        print(f"wrote {args.private} (private, 0600: keep it off the fleet manager) and {args.public}")
    else:
        info = keys.describe(args.file)
        print(f"{args.file}: {info['kind']} key; public key {info['public_key']}")
    return 0
