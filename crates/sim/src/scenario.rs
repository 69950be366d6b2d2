//! Controls for hand-written scenario tests: drive the simulated cluster step by step.
