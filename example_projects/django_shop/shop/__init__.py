"""An example shop using goaltrack: signup, login, plan purchase."""
