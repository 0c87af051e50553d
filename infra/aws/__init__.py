"""AWS resources, one ComponentResource per concern: network, cluster, add-ons, node pools, storage, jobs."""
