"""Reader self-service without an account: the manage page behind a signed link, and data rights."""
