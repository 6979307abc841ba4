"""notification: e-mails to customers about their orders, written to `<data-dir>/mail/`."""
