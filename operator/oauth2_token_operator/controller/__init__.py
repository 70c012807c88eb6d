"""The operator: kopf handlers (thin) over reconcilers that apply the pure policies."""
