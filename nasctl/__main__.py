"""`python -m nasctl` (and `torchrun -m nasctl`) run the CLI."""

from nasctl.cli import app

if __name__ == "__main__":
    app(prog_name="nasctl")
