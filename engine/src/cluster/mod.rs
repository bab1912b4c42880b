//! Per-cluster upstream state: load balancing, outlier detection, circuit breaking.
