"""`python -m mlkit` and `torchrun -m mlkit` enter here."""

from mlkit.cli import main

if __name__ == "__main__":
    main()
