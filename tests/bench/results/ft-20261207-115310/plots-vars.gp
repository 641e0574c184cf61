ncols = 1
epochs = ""
