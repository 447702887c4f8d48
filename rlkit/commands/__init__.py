"""One module per `rlkit` subcommand."""
