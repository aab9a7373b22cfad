// integration tests aggregator
