ncols = 4
epochs = "5 25 100"
