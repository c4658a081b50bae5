"""The layer classes of RETURNN's Theano era (the manual's NetworkHiddenLayer, NetworkLstmLayer, ... sections),
written once on the neutral ops so that 2017 configs run on every backend."""
