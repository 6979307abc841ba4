"""payment: a simulated card processor, answering the ordering saga by card token."""
