//! Route matching with Istio VirtualService semantics.
