"""`python launch.py users add|remove|list|token`: manage the studio's logins (salted Argon2id hashes in a logins
file) and API tokens.

The file is --auth-file when given, else `logins` in the data dir, which the studio reads by itself: adding the
first user turns logins on for the next launch. A running studio takes every later change at once (it reads the
file again when it changes): a removed user, a new password and a revoked token stop working, and the UI sessions
of a removed user, or of a changed password, end. A password is asked twice on a terminal, or read as one line
from standard input otherwise (`echo "$PW" | python launch.py users add ana`), never taken from the command line,
where other users of the machine could read it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from studio.accounts import add_user, issue_token, read_logins, remove_user, revoke_token
from studio.config import ENV_PREFIX, StudioConfig, default_data_dir


def users_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="launch.py users", description="Manage the studio's logins.")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get(f"{ENV_PREFIX}DATA_DIR", default_data_dir()),
                        help="the studio's data dir, whose `logins` file is used (default %(default)s)")
    parser.add_argument("--auth-file", type=Path, default=os.environ.get(f"{ENV_PREFIX}AUTH_FILE"),
                        help="use this logins file instead (as launch.py --auth-file)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user, or set a user's new password")
    add.add_argument("name")
    remove = commands.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    commands.add_parser("list", help="list the users")
    token = commands.add_parser("token", help="make a user's API token (shown once; replaces the old one)")
    token.add_argument("name")
    token.add_argument("--revoke", action="store_true", help="remove the user's API token instead")
    args = parser.parse_args(argv)
    path = StudioConfig(data_dir=Path(args.data_dir).expanduser(),
                        auth_file=Path(args.auth_file) if args.auth_file else None).logins_file
    try:
        if args.command == "add":
            new = add_user(path, args.name, _read_password())
            print(f"{'added' if new else 'changed the password of'} {args.name} in {path}")  # noqa: T201
        elif args.command == "remove":
            remove_user(path, args.name)
            print(f"removed {args.name} from {path}")  # noqa: T201
        elif args.command == "token" and args.revoke:
            done = revoke_token(path, args.name)
            print(f"revoked {args.name}'s API token" if done else f"{args.name} had no API token")  # noqa: T201
        elif args.command == "token":
            # on stdout alone, so `TOKEN=$(python launch.py users token ana)` works; the note goes to stderr
            print(issue_token(path, args.name))  # noqa: T201
            print(f"API token of {args.name}: send it as `Authorization: Bearer TOKEN`; it is shown only now, and "
                  "a running studio takes it at once", file=sys.stderr)  # noqa: T201
        else:
            for name in sorted(read_logins(path)) if path.exists() else []:
                print(name)  # noqa: T201
    except ValueError as e:
        print(f"launch.py users: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise ValueError("the two passwords differ")
    return password
