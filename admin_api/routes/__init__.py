"""The API's resources, one module each, each exporting ``router`` (included by ``create_app``)."""
