"""The eventsourcing Application, projections' logic, reconciliation and time travel."""
