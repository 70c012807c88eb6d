"""The operator: kopf handlers (thin) over reconcilers that apply the pure policies.

Folders, from the ground up (each imports only its own and those before it):
`shared` (the context both reconcilers are given, and its parts), `request` (one
AccessTokenRequest's reconcile: gather, plan, carry out, finalize), `client` (one
OAuth2Client's reconcile) and `process` (start, kopf wiring, leader election, health,
memory given back).
"""
