"""E-mail providers: each takes one rendered message and answers sent, or how it failed."""
