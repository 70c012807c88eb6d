"""The process around the reconcilers: start, kopf wiring, leader election, health, memory."""
