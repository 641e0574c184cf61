ncols = 2
epochs = "25"
