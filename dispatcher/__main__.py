from dispatcher.cli import run

run()
