"""Human perceptual studies: pix2pix's real-vs-fake test and pix2pixHD's A/B preference test.

design   study folders, trial lists per participant, sentinels
store    answers in SQLite, each committed before it is acknowledged
stats    binomial rates with Wilson / Clopper-Pearson intervals
results  rates per condition, careless participants, CSV export
server   the participant page and its JSON API on `pix2pix.web`
"""
