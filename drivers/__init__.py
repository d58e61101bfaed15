"""srkit's backend drivers, one package per backend. Import nothing heavy here."""
