"""What crosses between actors: the gradient packet and its reply, flat vectors, the PS's counters."""
