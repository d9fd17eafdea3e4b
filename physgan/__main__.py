"""``python -m physgan`` (also what ``torchrun -m physgan`` runs)."""

from physgan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
