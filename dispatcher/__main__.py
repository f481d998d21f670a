from dispatcher.cli import app

app(prog_name="dispatcher")
