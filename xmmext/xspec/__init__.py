"""xspec"""
