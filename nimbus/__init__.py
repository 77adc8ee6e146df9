"""The Nimbus Django project and app: settings, configuration of the datastore, API, admin."""
