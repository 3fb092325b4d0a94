"""Pure logic, no I/O: policies, state machines, arithmetic. Time and randomness are parameters."""
