"""The domain, its application services, and the sealed event store they run on."""
