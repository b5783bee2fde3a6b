"""Read models built from the event store, each with its tables and tracking."""
