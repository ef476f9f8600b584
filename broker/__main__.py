from broker.app.cli import main

main()
