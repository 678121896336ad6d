"""Train and evaluate a model through recbole-bifair (see README.md for flags and config keys)."""

from recbole_bifair.run import console_main

if __name__ == "__main__":
    console_main()
