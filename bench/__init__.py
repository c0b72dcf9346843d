"""`make bench`: DynamoDB requests and capacity per use case, local HTTP latency, cold import time.

Numbers are for comparing our own versions with each other; they never fail a build (nothing asserts on time).
"""
