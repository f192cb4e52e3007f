print("quantkit")
