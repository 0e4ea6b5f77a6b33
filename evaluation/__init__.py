"""Evaluation code for the benchmarks and tests, never on the live path: accuracy scoring
(`scoring`: WER / CER), the labelled compliance lines and calls for the shipped scripts
(`evalset`; drawn and scored in `callplans`) and ASR-error injection at a chosen character
error rate (`noise`). Kept out of the product packages so that what ships is only what runs a
call."""
