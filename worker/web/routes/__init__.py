"""The API's routers: one module per resource, each a `router` the app includes."""
