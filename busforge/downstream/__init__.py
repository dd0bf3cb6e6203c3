"""Downstream use of busforge datasets: `busforge downstream` trains and tests a segmenter and a
classifier on each dataset and compares them (Tables 3, 4); `export nnunet` writes nnU-Net's layout."""
