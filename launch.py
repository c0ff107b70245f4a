"""Start Atelier: `python launch.py --help` lists the flags (each also an ATELIER_* environment variable)."""

from studio.launcher import main

if __name__ == "__main__":
    main()
