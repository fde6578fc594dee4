"""Facts about one `rdu.kernel` read from IR: loops, tiles and operands (`facts`), access
geometry (`access`), payload roles (`payload`: reductions, contractions, patterns) and the
byte-counting rules (`traffic`)."""
