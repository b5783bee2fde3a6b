"""Settings, storage back ends, read-model views and adapters to the outside world."""
