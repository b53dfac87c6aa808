"""The segmentation core: segment rules, RFM scores and customer-base models (BG/NBD, Gamma-Gamma, CLV)."""
