"""One AccessTokenRequest's reconcile: gather, plan, carry out, finalize."""
