# Generated from protos/ by protos/generate.py. DO NOT EDIT.
