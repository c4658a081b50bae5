"""TF layer classes, registered by config ``class`` name through the plugin registry."""
